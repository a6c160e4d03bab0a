"""Packaged presets: accelerator YAMLs (``hwconfigs/``) and MoE model YAMLs (``workloads/``).

The directories live at the top of the repository; ``hwconfigs`` and ``workloads`` here are
symbolic links to them, so that a wheel built from the checkout carries the files inside the
package and ``--hw northpole`` works from a non-editable install.
"""
