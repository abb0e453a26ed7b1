"""Plumbing every part uses: engines and migrations, loops and thread hops, metrics, time."""
