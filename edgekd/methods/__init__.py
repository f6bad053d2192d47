"""Training methods, one small class each, registered by name (`method=NAME`).

Adding a method is one new module with a `@register_method("name")` subclass of `Method`
(`edgekd.methods.base` lists the hooks) imported here, plus its test. The trainer holds no method name.
"""

# importing a family registers its methods, in this order (the one `list_methods` shows): the paper's
# method and its variants, the baselines, the references
from edgekd.methods import ours, cskd, tfkd, baselines, kd, pretrained  # noqa: F401, I001
from edgekd.methods.base import Method, Networks, SavedNetwork, TeacherFit
from edgekd.methods.registry import get_method, list_methods, register_method

__all__ = ["Method", "Networks", "SavedNetwork", "TeacherFit", "get_method", "list_methods", "register_method"]
