"""The urgency model: training, scoring, and watching its inputs and outputs drift."""
