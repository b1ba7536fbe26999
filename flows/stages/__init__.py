"""One plain function per pipeline stage; no Prefect here (flows wrap these)."""
