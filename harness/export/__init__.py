"""Stage 2, the phone parts exported to each backend's artifact, through a content-addressed cache."""
