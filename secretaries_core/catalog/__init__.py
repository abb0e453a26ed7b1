"""The catalog: secretaries, users and their links — models, rules, registry, admin use cases."""
