"""``shapewise check``: output, exit codes, errors without tracebacks, fuzzing, pre-commit.

The fuzz tests feed hypothesis-generated configs (random and malformed JSON, random bytes,
random nanoGPT files) through the real entry point ``shapewise.cli.main.main`` in-process:
no exception may escape and the exit code is always 0, 1 or 2. A handful more go through a
real subprocess. The pre-commit tests run the hook through the pre-commit framework.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shapewise.cli.main import main

ROOT = Path(__file__).parents[2]
HF = ROOT / "tests" / "fixtures" / "hf"
FIX = ROOT / "tests" / "check" / "fixtures"


def run(argv: list[str]) -> tuple[int, str, str]:
    """main(argv) in-process: (exit code, stdout, stderr); argparse exits count as codes."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------------------- output
def test_gpt2_table_with_fix_and_speedups() -> None:
    code, out, err = run(["check", str(HF / "gpt2" / "config.json"), "--gpu", "a100"])
    assert code == 1 and err == ""
    assert "SW001" in out and "vocab-alignment" in out and "50257" in out and "50304" in out
    for header in ("severity", "field", "fix", "kernel speedup", "step speedup"):
        assert header in out
    assert "1 file checked: 1 warning (fails on warning)" in out
    assert "assumed" not in out  # the GPU was given


def test_clean_config_exits_0_and_default_gpu_is_named() -> None:
    code, out, _ = run(["check", str(HF / "llama-2-7b" / "config.json")])
    assert code == 0 and "no findings" in out
    assert "GPU assumed: h100-sxm" in out


def test_fail_on_threshold() -> None:
    pythia = str(HF / "pythia-2.8b")
    assert run(["check", pythia, "--gpu", "a100"])[0] == 1
    assert run(["check", pythia, "--gpu", "a100", "--fail-on", "error"])[0] == 0
    code, out, _ = run(["check", str(HF / "gpt2"), "--gpu", "a100", "--tp", "8",
                        "--fail-on", "error"])
    assert code == 1 and "SW005" in out and "SW006" in out


def test_json_output() -> None:
    code, out, err = run(["check", str(HF / "gpt2"), str(HF / "llama-2-7b"), "--gpu", "a100",
                          "--json", "--micro-batch", "4", "--seq-len", "512"])
    assert code == 1 and err == ""
    data = json.loads(out)
    assert data["exit_code"] == 1 and data["gpu"] == "a100-sxm-80gb" and data["errors"] == []
    gpt2, llama = data["reports"]
    assert (gpt2["micro_batch"], gpt2["seq_len"]) == (4, 512)
    (f,) = [f for f in gpt2["findings"] if f["rule_id"] == "SW001"]
    assert f["fix"] == 50304 and f["gemm_speedup"] > 1.2 and f["step_speedup"] > 1
    assert f["summary"].startswith("vocab_size 50257 → 50304")
    assert [x for x in llama["findings"] if x["severity"] != "info"] == []


def test_megatron_and_nanogpt_files() -> None:
    code, out, _ = run(["check", str(FIX / "megatron" / "gpt3_175b.json"),
                        str(FIX / "nanogpt" / "train_shakespeare_char.py"), "--gpu", "h100"])
    assert code in (0, 1)
    assert "Megatron-LM arguments" in out and "tp 8" in out and "16 pipeline stages" in out
    assert "nanoGPT config" in out and "micro-batch 64" in out


# ------------------------------------------------------------------- unusable inputs
@pytest.mark.parametrize(("content", "match"), [
    (None, "cannot read"),
    ('{"model_type": "gpt2", ', "invalid JSON"),
    ('{"model_type": "bert", "hidden_size": 768}', "model_type: 'bert' is not supported"),
    ('{"model_type": "gpt2", "n_embd": 768, "n_head": 7, "n_layer": 2, "vocab_size": 9}',
     "n_head: 7 does not divide"),
    ('{"model_type": "gpt2", "n_embd": -768, "n_head": 12, "n_layer": 2, "vocab_size": 9}',
     "n_embd: must be positive"),
    ('{"model_type": "gpt2", "n_embd": NaN}', "invalid JSON"),
    ("[]", "expected a JSON object"),
])
def test_unusable_input_is_one_line_exit_2(tmp_path: Path, content: str | None,
                                           match: str) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    code, out, err = run(["check", str(path), "--gpu", "a100"])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("shapewise check: error: ")
    assert match in lines[0] and str(path) in lines[0]
    assert "Traceback" not in err + out
    assert out == ""  # the one line on stderr is the whole output


def test_bad_file_does_not_hide_the_others(tmp_path: Path) -> None:
    code, out, err = run(["check", str(tmp_path / "missing.json"), str(HF / "gpt2"),
                          "--gpu", "a100"])
    assert code == 2 and "SW001" in out and "1 unreadable" in out
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv", [
    ["check", "x.json", "--gpu", "nonesuch"],
    ["check", "x.json", "--tp", "0"],
    ["check", "x.json", "--tp", "eight"],
    ["check", "x.json", "--fail-on", "fatal"],
    ["check"],
])
def test_bad_arguments_exit_2(argv: list[str], tmp_path: Path) -> None:
    argv = [str(HF / "gpt2") if a == "x.json" else a for a in argv]
    code, _, err = run(argv)
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_impossible_values_exit_2() -> None:
    code, _, err = run(["check", str(HF / "gpt2"), "--seq-len", "4096", "--gpu", "a100"])
    assert code == 2 and "max_position_embeddings" in err
    code, _, err = run(["check", str(HF / "gpt2"), "--dtype", "fp8", "--gpu", "a100"])
    assert code == 2 and "fp8" in err


# ------------------------------------------------------------------------------ fuzz
_KEYS = ["model_type", "hidden_size", "num_attention_heads", "num_hidden_layers",
         "num_key_value_heads", "intermediate_size", "vocab_size", "max_position_embeddings",
         "n_embd", "n_head", "n_layer", "n_inner", "n_positions", "head_dim", "rotary_pct",
         "tie_word_embeddings", "sliding_window", "image_size", "patch_size", "num_labels",
         "architectures", "id2label", "num_layers", "ffn_hidden_size", "seq_length",
         "micro_batch_size", "tensor_model_parallel_size", "pipeline_model_parallel_size",
         "swiglu", "padded_vocab_size", "group_query_attention", "num_query_groups",
         "make_vocab_size_divisible_by", "normalization", "position_embedding_type",
         "use_parallel_residual", "attention_bias", "qkv_bias", "use_sliding_window",
         "kv_channels", "rotary_percent", "--hidden-size", "junk"]
_SIZES = st.one_of(
    st.sampled_from([1, 2, 3, 7, 8, 12, 16, 25, 32, 64, 80, 96, 128, 768, 1000, 1024, 2048,
                     2560, 4096, 5632, 10922, 11008, 32000, 50257, 50304]),
    st.integers(min_value=-10, max_value=5000),
    st.integers(min_value=-(2**70), max_value=2**70),
)
_VALUES = st.one_of(
    _SIZES, _SIZES, st.booleans(), st.none(), st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(["gpt2", "gpt_neox", "llama", "mistral", "qwen2", "vit", "bert",
                     "RMSNorm", "LayerNorm", "rope", "learned_absolute", "ViTModel"]),
    st.lists(st.sampled_from(["ViTModel", "ViTForImageClassification", "X"]), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=3),
)
_CONFIGS = st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=14)
_FLAGS = st.lists(st.sampled_from([
    ["--tp", "2"], ["--tp", "8"], ["--tp", "3"], ["--micro-batch", "3"], ["--seq-len", "100"],
    ["--seq-len", "4096"], ["--pp", "4"], ["--gpu", "mi300x"], ["--dtype", "fp16"],
    ["--json"], ["--fail-on", "error"], ["--dtype", "fp8"], ["--micro-batch", "99999999"],
]), max_size=3)


def _assert_clean(code: Any, out: str, err: str) -> None:
    assert code in (0, 1, 2), code
    assert "Traceback" not in out + err
    if code == 2:
        assert err.startswith("shapewise")
        assert all(line.startswith("shapewise") for line in err.strip().splitlines())


@pytest.fixture(scope="module")
def fuzz_dir() -> Any:
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _fuzz_json(config: dict, flags: list[list[str]], folder: Path) -> None:
    path = folder / "config.json"
    path.write_text(json.dumps(config, allow_nan=True))
    argv = ["check", str(path), *[x for f in flags for x in f]]
    _assert_clean(*run(argv))


@settings(max_examples=1000, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(config=_CONFIGS, flags=_FLAGS)
def test_fuzz_random_configs(config: dict, flags: list[list[str]], fuzz_dir: Path) -> None:
    _fuzz_json(config, flags, fuzz_dir)


_BASE = json.loads((HF / "llama-2-7b" / "config.json").read_text())


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(changes=st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=3),
       drop=st.lists(st.sampled_from(list(_BASE)), max_size=2), flags=_FLAGS)
def test_fuzz_mutated_real_configs(changes: dict, drop: list[str], flags: list[list[str]],
                                   fuzz_dir: Path) -> None:
    config = {k: v for k, v in _BASE.items() if k not in drop}
    config.update(changes)
    _fuzz_json(config, flags, fuzz_dir)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=200),
                      st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.sampled_from([b"", b"{", b"{}", b"null", b"1e999", b'{"a":' * 5000,
                                       b"[" * 100000, b"\xef\xbb\xbf{}"])),
       suffix=st.sampled_from([".json", ".py"]))
def test_fuzz_malformed_bytes(data: bytes, suffix: str, fuzz_dir: Path) -> None:
    path = fuzz_dir / f"config{suffix}"
    path.write_bytes(data)
    _assert_clean(*run(["check", str(path), "--gpu", "a100"]))


_PY_LINE = st.one_of(
    st.builds(lambda k, v: f"{k} = {v!r}",
              st.sampled_from(["n_layer", "n_head", "n_embd", "block_size", "vocab_size",
                               "batch_size", "bias", "init_from", "dropout"]),
              _VALUES),
    st.sampled_from(["import os", "x = open('f')", "n_layer = 2 ** 99", "n_head = 1/0",
                     "n_embd = 5 * 8 * 32", "init_from = 'gpt2-medium'", "if x:\n  y = 1",
                     "def f(): pass", "n_layer = -(3)", "block_size = 10**6", "# comment",
                     "bias = True", "n_embd = 'wide'", "(", "n_head = [1, 2]"]),
)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(lines=st.lists(_PY_LINE, max_size=8), flags=_FLAGS)
def test_fuzz_nanogpt_files(lines: list[str], flags: list[list[str]], fuzz_dir: Path) -> None:
    path = fuzz_dir / "train.py"
    path.write_text("\n".join(lines) + "\n")
    _assert_clean(*run(["check", str(path), *[x for f in flags for x in f]]))


@pytest.mark.parametrize("content", [
    '{"model_type": "gpt2", "n_embd": 768, "n_head": 12, "n_layer": 12, "vocab_size": 50257}',
    '{"model_type": "gpt2"',
    '{"model_type": "t5"}',
    '{"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, '
    '"num_hidden_layers": 32, "intermediate_size": 11008, "vocab_size": 32000}',
    "n_layer = 2\nimport os\n",
])
def test_real_subprocess_never_shows_a_traceback(tmp_path: Path, content: str) -> None:
    suffix = ".py" if "n_layer =" in content else ".json"
    path = tmp_path / f"config{suffix}"
    path.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "shapewise", "check", str(path), "--gpu",
                           "a100"], capture_output=True, text=True, timeout=60)
    assert proc.returncode in (0, 1, 2)
    assert "Traceback" not in proc.stderr + proc.stdout
    if proc.returncode == 2:
        assert len(proc.stderr.strip().splitlines()) == 1


def test_check_path_imports_neither_torch_nor_optuna() -> None:
    code = ("import sys\nfrom shapewise.cli.main import main\n"
            f"main(['check', {str(HF / 'gpt2')!r}])\n"
            "print('torch' in sys.modules, 'optuna' in sys.modules, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.stderr.split() == ["False", "False"]


# ------------------------------------------------------------------------ pre-commit
def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


def _project(tmp_path: Path, hooks_yaml: str) -> Path:
    proj = tmp_path / "proj"
    (proj / "models" / "small").mkdir(parents=True)
    shutil.copy(HF / "gpt2" / "config.json", proj / "models" / "small" / "config.json")
    shutil.copy(HF / "llama-2-7b" / "config.json", proj / "config.json")
    (proj / "package.json").write_text('{"name": "not a model"}')  # not matched by the hook
    (proj / ".pre-commit-config.yaml").write_text(hooks_yaml)
    _git(proj, "init", "-q")
    _git(proj, "add", "-A")
    return proj


def _pre_commit() -> str:
    pytest.importorskip("pre_commit")
    exe = shutil.which("pre-commit") or str(Path(sys.executable).parent / "pre-commit")
    if not Path(exe).exists():
        pytest.skip("pre-commit executable not found")
    return exe


def test_pre_commit_hook_definition_runs_for_real(tmp_path: Path) -> None:
    """The hook as .pre-commit-hooks.yaml defines it (entry, files, types), run by the
    pre-commit framework, with the interpreter under test standing in for the hook's own
    environment (``language: system``): fast and offline."""
    import yaml

    exe = _pre_commit()
    (hook,) = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "shapewise-check" and hook["entry"] == "shapewise check"
    local = {**hook, "language": "system",
             "entry": f"{sys.executable} -m shapewise check", "args": ["--gpu", "a100"]}
    config = {"repos": [{"repo": "local", "hooks": [local]}]}
    proj = _project(tmp_path, yaml.safe_dump(config))
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([exe, "run", "--all-files"], cwd=proj, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # GPT-2's vocabulary
    assert "SW001" in proc.stdout and "50304" in proc.stdout
    assert "models/small/config.json" in proc.stdout and "package.json" not in proc.stdout
    # fixed: the hook passes
    cfg = json.loads((proj / "models" / "small" / "config.json").read_text())
    cfg["vocab_size"] = 50304
    (proj / "models" / "small" / "config.json").write_text(json.dumps(cfg))
    proc = subprocess.run([exe, "run", "--all-files"], cwd=proj, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("SHAPEWISE_OFFLINE") == "1", reason="needs PyPI")
def test_pre_commit_try_repo_installs_and_runs_the_hook(tmp_path: Path) -> None:
    """The hook exactly as a user gets it: pre-commit builds its python environment from a
    commit of this repository (pip installs shapewise and its dependencies from PyPI, ~30 s
    the first time) and runs it on a repository's config.json."""
    exe = _pre_commit()
    repo = tmp_path / "shapewise"
    repo.mkdir()
    for name in ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("shapewise", "profiles", "kernels"):
        shutil.copytree(ROOT / folder, repo / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "hook")
    proj = _project(tmp_path, "repos: []\n")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([exe, "try-repo", str(repo), "shapewise-check", "--all-files"],
                          cwd=proj, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "SW001" in proc.stdout and "models/small/config.json" in proc.stdout


def test_expert_parallel_size_of_a_moe_config() -> None:
    moe = Path(__file__).resolve().parents[1] / "fixtures" / "hf_moe" / "mixtral-8x7b"
    code, out, _ = run(["check", str(moe), "--gpu", "h100", "--seq-len", "4096", "--ep", "3"])
    assert code == 1 and "SW013" in out and "ep 3 does not divide num_experts 8" in out
    code, out, _ = run(["check", str(moe), "--gpu", "h100", "--seq-len", "4096", "--ep", "8"])
    assert "SW013" not in out
    proc = subprocess.run([sys.executable, "-m", "shapewise", "check", str(moe), "--gpu",
                           "h100", "--ep", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
