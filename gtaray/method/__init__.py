"""The LSD method: loss terms and the D -> G -> F update per variant."""
