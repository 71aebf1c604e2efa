"""tufl: threshold-adaptive unsupervised focal loss (TUFL) and cross-domain image mixing
for unsupervised domain adaptation of semantic segmentation (Yan et al., T-ITS 2023)."""

__version__ = "0.1.0"
