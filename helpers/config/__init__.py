"""Parameters: one rule per name (params.py) and the runner profiles (profile.py, profiles/*.yaml
beside the package). Imports helpers.core and helpers.model (for the names of losses and inits)."""
