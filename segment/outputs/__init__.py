"""Everything written to disk: :mod:`.files` (atomic writes and groups, PNG and JSON
writers), :mod:`.paths` (output names, refusing to replace inputs), :mod:`.model_file` (the
NAME.model.json format), :mod:`.segmentation` (the images, plots and model file of one
segmentation) and :mod:`.plots` (matplotlib figures)."""
