"""Validates Kubernetes manifests: built-in kinds against the Kubernetes API schemas of the
given version (kubernetes-validate, strict: unknown fields are errors), custom resources against
the openAPIV3Schema of their CustomResourceDefinition (from the CRD files given with --crds, or
from the stream itself). Prints one JSON object: {"checked": [...], "errors": [...]}.

    python3 k8s_validate.py VERSION MANIFEST... [--crds CRD_FILE...]
"""
import json
import sys

import jsonschema
import kubernetes_validate
import yaml


def crd_schemas(docs):
    out = {}
    for d in docs:
        if d.get("kind") != "CustomResourceDefinition":
            continue
        spec = d["spec"]
        for v in spec["versions"]:
            key = (spec["group"] + "/" + v["name"], spec["names"]["kind"])
            out[key] = v["schema"]["openAPIV3Schema"]
    return out


def main():
    version = sys.argv[1]
    args = sys.argv[2:]
    manifests, crd_files = args, []
    if "--crds" in args:
        i = args.index("--crds")
        manifests, crd_files = args[:i], args[i + 1:]
    crd_docs, docs = [], []
    for path in crd_files:
        with open(path) as f:
            crd_docs += [d for d in yaml.safe_load_all(f) if d]
    for path in manifests:
        with open(path) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    schemas = crd_schemas(crd_docs + docs)
    checked, errors = [], []
    for d in docs:
        name = "%s %s/%s" % (d.get("kind"), d.get("metadata", {}).get("namespace", ""),
                             d.get("metadata", {}).get("name"))
        key = (d.get("apiVersion"), d.get("kind"))
        try:
            if key in schemas:
                jsonschema.validate(d, schemas[key])
            else:
                kubernetes_validate.validate(d, version, strict=True)
            checked.append(name)
        except Exception as e:  # each failure is reported with its object
            errors.append("%s: %s" % (name, (str(e) or repr(e)).splitlines()[0]))
    print(json.dumps({"checked": checked, "errors": errors}))


main()
