"""The healthscale.io/v1alpha1 custom resources: typed models, parsing and CRD generation."""
