"""State-space experiments: HiPPO, associative recall / selective copying, ListOps."""
