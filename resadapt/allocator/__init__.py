"""The Allocator: a lightweight, query-aware network that predicts a Beta policy over each frame's resize scale."""
