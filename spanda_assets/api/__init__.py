"""HTTP endpoints over lib/ (never defs/): the Label Studio webhook receiver."""
