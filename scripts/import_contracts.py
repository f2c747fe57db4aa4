"""Import-linter contracts the built-in types cannot express.

With external packages in the graph, import-linter keeps only their top-level name
(``torch``), so a forbidden contract cannot name ``torch.distributed``. This contract reads
the import lines grimp records for each import of the external package instead.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


class ExternalSubmoduleContract(Contract):
    """Only ``allowed_importers`` (and what lies in them) import ``submodule`` of an external
    package (e.g. ``torch.distributed``)."""

    type_name = "external_submodule"

    submodule = fields.StringField()
    allowed_importers = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        submodule = str(self.submodule)
        package = submodule.split(".")[0]
        allowed = [str(name) for name in self.allowed_importers]  # type: ignore[attr-defined]
        illegal: list[dict[str, object]] = []
        for importer in sorted(graph.find_modules_that_directly_import(package)):
            if any(importer == name or importer.startswith(name + ".") for name in allowed):
                continue
            for detail in graph.get_import_details(importer=importer, imported=package):
                line = str(detail["line_contents"])
                if submodule in line.replace(" import ", ".").split(" as ")[0] + " ":
                    illegal.append({"importer": importer, "line_number": detail["line_number"],
                                    "line": line})
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for link in check.metadata["illegal"]:
            output.print_error(f"{link['importer']}:{link['line_number']}: {link['line']}")
            output.new_line()
