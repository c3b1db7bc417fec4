"""Studies beyond the papers: every rule's signatures (the atlas) and identifying a rule from recordings."""
