"""Generating by optimising an image rather than weights: DeepDream and neural style transfer."""
