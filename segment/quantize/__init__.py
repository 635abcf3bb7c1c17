"""Colour quantisation (``segment quantize``): :mod:`.palette` fits the palette (mixture
means polished by Lloyd iterations), :mod:`.mapping` maps pixels to it (nearest colour or
Floyd–Steinberg dithering), :mod:`.search` finds the smallest k that reaches a quality
target, :mod:`.run` is the command's work on one file. The figures are in
:mod:`segment.metrics`."""
