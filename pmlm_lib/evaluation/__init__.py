"""What the answers are worth: metrics, the systems and tables of notebook 05, the statistics across
trainings, how personal the edits are, and the plots."""
