"""The bonus ledger as plain Python: lots, movements and the rules that move bonuses."""
