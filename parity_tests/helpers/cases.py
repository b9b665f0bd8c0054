"""The layer and pool configurations of the grids (and the structures the property tests draw from)."""

# (batch, in, out, kernel, stride, padding, groups, H, W). A hand-picked list
# instead of a Cartesian product (each new shape costs an XLA compile):
# batch 1 and >1, channels 1..16, kernels 1/3/5, paddings 0/1/2, odd and even
# sizes, non-square inputs; then strides, groups and "same".
LAYER_CASES = [
    (1, 1, 1, 1, 1, 0, 1, 5, 5),
    (3, 1, 8, 3, 1, 0, 1, 7, 6),
    (1, 2, 4, 3, 1, 1, 1, 8, 8),
    (2, 3, 5, 5, 1, 2, 1, 9, 10),
    (1, 4, 16, 5, 1, 0, 1, 11, 9),
    (2, 8, 8, 1, 1, 1, 1, 6, 7),
    (1, 16, 2, 3, 1, 2, 1, 5, 4),
    (2, 16, 16, 3, 1, 1, 1, 6, 6),
    # stride 2 (also with sizes the stride does not divide) and a stride pair
    (2, 4, 6, 3, 2, 1, 1, 9, 8),
    (1, 3, 4, 5, 2, 2, 1, 10, 11),
    (1, 2, 3, 3, (2, 1), 0, 1, 7, 6),
    # groups: 2, depthwise, depthwise with a channel multiplier, groups + stride
    (2, 4, 6, 3, 1, 1, 2, 7, 8),
    (1, 8, 8, 3, 1, 1, 8, 6, 5),
    (2, 4, 8, 3, 1, 0, 4, 5, 6),
    (1, 6, 9, 3, 2, 1, 3, 9, 9),
    # "same": odd kernel, even kernel (asymmetric padding, extra pixel bottom/right), with groups
    (2, 3, 4, 3, 1, "same", 1, 7, 6),
    (1, 2, 3, 4, 1, "same", 1, 6, 7),
    (1, 4, 6, 5, 1, "same", 2, 5, 5),
]

# (kernel, stride, ceil_mode, H, W): kernels 2/3, strides 1/2/3 (overlapping
# windows when stride < kernel, gaps when stride > kernel), even and odd sizes,
# ceil_mode on and off (partial windows on the bottom/right edge).
POOL_CASES = [
    (2, 2, False, 8, 8),
    (2, 2, True, 8, 8),
    (2, 2, False, 7, 9),
    (2, 2, True, 7, 9),
    (3, 3, False, 8, 10),
    (3, 3, True, 8, 10),
    (3, 3, True, 4, 5),
    (2, 1, False, 5, 6),
    (3, 1, True, 6, 7),
    (3, 2, False, 9, 6),
    (3, 2, True, 7, 8),
    (2, 3, False, 8, 7),
    (2, 3, True, 8, 7),
    (3, 2, True, 3, 4),
]
