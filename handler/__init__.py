"""AWS Lambda entry points (thin adapters over batglitch's core steps)."""
