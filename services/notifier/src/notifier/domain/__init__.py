"""Task rules, webhook signing and retry timing: pure, no I/O."""
