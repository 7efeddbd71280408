"""Customer trust policy and the one verifier every client path goes through."""
