"""Torch-free pieces both sides use: the student card, preprocessing, image decoding, gallery rendering.

The training side (`edgekd/`) and the deployment side (`export/`) may both import these; nothing here
imports torch, the training modules or `edgekd.export`.
"""
