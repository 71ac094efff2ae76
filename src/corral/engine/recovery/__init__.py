"""Recovery: backups of a project's state, their verification, restores, restore drills."""
