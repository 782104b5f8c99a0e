"""Injection-recovery on a real frame: its own PSF, fakes painted into it, and what the
detection and the classifier make of them (`assess`)."""
