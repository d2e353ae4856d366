"""Framework-free discrete-diffusion math (no fairseq imports).

* :mod:`.noising`   -- coupled absorbing forward process (SPEC §4.1-§4.2)
* :mod:`.weighting` -- per-sequence loss weights (SPEC §4.3)
* :mod:`.schedules` -- how many slots stay masked after each decoding step (SPEC §6.2)
* :mod:`.denoise`   -- one reparameterised / cmlm denoising step (SPEC §6.2)
* :mod:`.cycles`    -- lossless skipping of repeated states for exact early exit (SPEC §6.4)
* :mod:`.layout`    -- prompt/response concatenation and canvases (SPEC §2.1, §6.1)
"""
