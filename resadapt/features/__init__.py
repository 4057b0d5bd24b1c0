"""Coarse, frozen features the Allocator reads: low-resolution frame patches and the query's text features."""

ENCODER_DIR = "encoder"  # the trained dual encoder's folder inside features.out_dir and inside a package
