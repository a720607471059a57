"""The HTTP plumbing every router shares: dependencies, middleware, hardening, form bodies."""
