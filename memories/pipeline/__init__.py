"""The memory pipeline, one path for every way memories arrive:
context (what is stored) -> decide (pure: rules or a model's plan -> operations)
-> apply (the single writer). `message`, `importing` and `forget` drive it."""
