"""What every service shares: request signing, errors, the app factory."""
