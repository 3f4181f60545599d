"""Per-accelerator profiles (JSON), shipped as package data."""
