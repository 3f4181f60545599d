"""Cost model: GEMM, attention, memory-bound ops, tensor-parallel communication."""
