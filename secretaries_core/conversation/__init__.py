"""The path of one message, stage by stage (see docs/architecture.md, "The path of a message")."""
