"""Networks of the method: F (embedding), C (classifier), G (generator), D (discriminator)."""
