"""File readers and writers. No torch here."""
