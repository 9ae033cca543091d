"""Split builders: PadChest metadata, CheXGenBench / MIMIC-CXR prompts, any CSV, class folders (SPEC §1, §3)."""
