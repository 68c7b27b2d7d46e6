"""``python -m samples``: list the samples and how to run them."""

import pkgutil

import samples

print("Samples (run each with python -m samples.NAME --help for its flags):")
for module in pkgutil.iter_modules(samples.__path__):
    if not module.name.startswith("_"):
        print(f"  python -m samples.{module.name}")
