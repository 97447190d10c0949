"""One module per pipeline stage (ARCHITECTURE §2). Order is fixed by ``proxy/build.py``."""
