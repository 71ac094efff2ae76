"""Pure decisions: plans, strategies, health transitions, traffic weights.

Nothing here does I/O, reads a clock or makes a random id: time and ids are passed in,
so every decision is tested with plain tables.
"""
