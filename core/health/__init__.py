"""Dataset health: what silently ruins a small classifier, found before a run starts.

Two kinds of checks, over both splits at once:

- **Image checks** (cheap: a second or two per thousand images, run at import):
  CleanVision (``cleanvision.Imagelab``) finds exact duplicates (a hash of the pixels),
  near duplicates (perceptual hash), and odd images (dark, light, blurry, low information,
  grayscale among colour, odd sizes and aspect ratios); imori adds tiny images, the class
  balance, classes too small to learn or test, and which duplicates lie **across train
  and test** (a test image that is a copy of a training image inflates test accuracy).
- **Feature checks** (seconds to minutes: the CLI runs them in the foreground, the
  dashboard through a worker): the images' features from the offline ImageNet-pretrained
  EfficientNet-Lite0 give near duplicates that survive resizing and re-compression (a
  cosine similarity of at least ``DUPLICATE_COSINE`` between a test and a training image)
  and, with out-of-sample predicted probabilities from a 5-fold cross-validated logistic
  regression on those features, likely label errors ranked by confident learning
  (cleanlab's ``find_label_issues``, Northcutt et al. 2021).

A report is cached under ``IMORI_HOME/cache/health`` by the dataset's content (its
decoded pixels, labels, splits and names), so it is computed again only when the dataset
changes. Every finding names its images as the dataset does: a path relative to the
dataset's root for a dataset of files, ``train/12`` (split and index) for a built-in or
torchvision set.

Where it lives:

- ``report``: ``Finding``, ``HealthReport``, the kinds of finding (``KINDS``), ``finding_key``.
- ``dataset``: what the checks read (``Images``: every image of both splits, in one order)
  and the content identity a report is cached by.
- ``checks/``: one module per family of checks (``classes``, ``images``, ``features``),
  each registered by name with ``checks.registry.register``; a new check is one module.
- ``check``: ``check_dataset`` (runs the registered checks, stage by stage, through the
  cache) and ``check_after_import``.
- ``cache``: reports by dataset and content identity, ``latest_report``.
- ``thumbnails``, ``fix`` (``fix_dataset``: a new version of an imported dataset).

This package's ``__init__`` imports nothing: callers import from the modules.
"""
