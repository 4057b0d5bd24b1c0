"""Coarse, frozen features the Allocator reads: low-resolution frame patches and the query's text features."""
