"""The tuner: schedule search driven by cycle-accurate measurements and a learned cost model."""
