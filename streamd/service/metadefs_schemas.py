"""The JSON Schemas of the metadefs API and of tasks, exactly as Glance 33 serves them.

Glance's own validation schemas: python-glanceclient builds its models from them (warlock)
and validates what it sends; streamd validates request bodies with the same documents
(``streamd.service.metadefs``), so client and server agree. Recorded from the Glance peer
(``tests/record_glance_metadefs.py`` compares them on every run); do not edit by hand. Each
plural embeds its singular, so only the singulars are written out here.
"""

from __future__ import annotations

import copy
from typing import Any

# ruff: noqa: E501  (recorded text: long descriptions stay whole)
# the singular documents as recorded; the plurals are derived from them below, as Glance does
# fmt: off
_ITEMS: dict[str, dict[str, Any]] = {
    "namespace": {
        "name": "namespace",
        "properties": {
            "namespace": {
                "type": "string",
                "description": "The unique namespace text.",
                "maxLength": 80
            },
            "display_name": {
                "type": "string",
                "description": "The user friendly name for the namespace. Used by UI if available.",
                "maxLength": 80
            },
            "description": {
                "type": "string",
                "description": "Provides a user friendly description of the namespace.",
                "maxLength": 500
            },
            "visibility": {
                "type": "string",
                "description": "Scope of namespace accessibility.",
                "enum": [
                    "public",
                    "private"
                ]
            },
            "protected": {
                "type": "boolean",
                "description": "If true, namespace will not be deletable."
            },
            "owner": {
                "type": "string",
                "description": "Owner of the namespace.",
                "maxLength": 255
            },
            "created_at": {
                "type": "string",
                "readOnly": True,
                "description": "Date and time of namespace creation",
                "format": "date-time"
            },
            "updated_at": {
                "type": "string",
                "readOnly": True,
                "description": "Date and time of the last namespace modification",
                "format": "date-time"
            },
            "schema": {
                "readOnly": True,
                "type": "string"
            },
            "self": {
                "readOnly": True,
                "type": "string"
            },
            "resource_type_associations": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {
                            "type": "string"
                        },
                        "prefix": {
                            "type": "string"
                        },
                        "properties_target": {
                            "type": "string"
                        }
                    }
                }
            },
            "properties": {
                "$ref": "#/definitions/property"
            },
            "objects": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {
                            "type": "string"
                        },
                        "description": {
                            "type": "string"
                        },
                        "required": {
                            "$ref": "#/definitions/stringArray"
                        },
                        "properties": {
                            "$ref": "#/definitions/property"
                        }
                    }
                }
            },
            "tags": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {
                            "type": "string"
                        }
                    }
                }
            }
        },
        "additionalProperties": False,
        "definitions": {
            "positiveInteger": {
                "type": "integer",
                "minimum": 0
            },
            "positiveIntegerDefault0": {
                "allOf": [
                    {
                        "$ref": "#/definitions/positiveInteger"
                    },
                    {
                        "default": 0
                    }
                ]
            },
            "stringArray": {
                "type": "array",
                "items": {
                    "type": "string"
                },
                "uniqueItems": True
            },
            "property": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": [
                        "title",
                        "type"
                    ],
                    "properties": {
                        "name": {
                            "type": "string",
                            "maxLength": 80
                        },
                        "title": {
                            "type": "string"
                        },
                        "description": {
                            "type": "string"
                        },
                        "operators": {
                            "type": "array",
                            "items": {
                                "type": "string"
                            }
                        },
                        "type": {
                            "type": "string",
                            "enum": [
                                "array",
                                "boolean",
                                "integer",
                                "number",
                                "object",
                                "string",
                                None
                            ]
                        },
                        "required": {
                            "$ref": "#/definitions/stringArray"
                        },
                        "minimum": {
                            "type": "number"
                        },
                        "maximum": {
                            "type": "number"
                        },
                        "maxLength": {
                            "$ref": "#/definitions/positiveInteger"
                        },
                        "minLength": {
                            "$ref": "#/definitions/positiveIntegerDefault0"
                        },
                        "pattern": {
                            "type": "string",
                            "format": "regex"
                        },
                        "enum": {
                            "type": "array"
                        },
                        "readonly": {
                            "type": "boolean"
                        },
                        "default": {},
                        "items": {
                            "type": "object",
                            "properties": {
                                "type": {
                                    "type": "string",
                                    "enum": [
                                        "array",
                                        "boolean",
                                        "integer",
                                        "number",
                                        "object",
                                        "string",
                                        None
                                    ]
                                },
                                "enum": {
                                    "type": "array"
                                }
                            }
                        },
                        "maxItems": {
                            "$ref": "#/definitions/positiveInteger"
                        },
                        "minItems": {
                            "$ref": "#/definitions/positiveIntegerDefault0"
                        },
                        "uniqueItems": {
                            "type": "boolean",
                            "default": False
                        },
                        "additionalItems": {
                            "type": "boolean"
                        }
                    }
                }
            }
        },
        "required": [
            "namespace"
        ]
    },
    "property": {
        "name": "property",
        "properties": {
            "name": {
                "type": "string",
                "maxLength": 80
            },
            "title": {
                "type": "string"
            },
            "description": {
                "type": "string"
            },
            "operators": {
                "type": "array",
                "items": {
                    "type": "string"
                }
            },
            "type": {
                "type": "string",
                "enum": [
                    "array",
                    "boolean",
                    "integer",
                    "number",
                    "object",
                    "string",
                    None
                ]
            },
            "required": {
                "$ref": "#/definitions/stringArray"
            },
            "minimum": {
                "type": "number"
            },
            "maximum": {
                "type": "number"
            },
            "maxLength": {
                "$ref": "#/definitions/positiveInteger"
            },
            "minLength": {
                "$ref": "#/definitions/positiveIntegerDefault0"
            },
            "pattern": {
                "type": "string",
                "format": "regex"
            },
            "enum": {
                "type": "array"
            },
            "readonly": {
                "type": "boolean"
            },
            "default": {},
            "items": {
                "type": "object",
                "properties": {
                    "type": {
                        "type": "string",
                        "enum": [
                            "array",
                            "boolean",
                            "integer",
                            "number",
                            "object",
                            "string",
                            None
                        ]
                    },
                    "enum": {
                        "type": "array"
                    }
                }
            },
            "maxItems": {
                "$ref": "#/definitions/positiveInteger"
            },
            "minItems": {
                "$ref": "#/definitions/positiveIntegerDefault0"
            },
            "uniqueItems": {
                "type": "boolean",
                "default": False
            },
            "additionalItems": {
                "type": "boolean"
            }
        },
        "additionalProperties": False,
        "definitions": {
            "positiveInteger": {
                "type": "integer",
                "minimum": 0
            },
            "positiveIntegerDefault0": {
                "allOf": [
                    {
                        "$ref": "#/definitions/positiveInteger"
                    },
                    {
                        "default": 0
                    }
                ]
            },
            "stringArray": {
                "type": "array",
                "items": {
                    "type": "string"
                },
                "minItems": 1,
                "uniqueItems": True
            }
        },
        "required": [
            "type",
            "title",
            "name"
        ]
    },
    "object": {
        "name": "object",
        "properties": {
            "name": {
                "type": "string",
                "maxLength": 80
            },
            "description": {
                "type": "string"
            },
            "required": {
                "$ref": "#/definitions/stringArray"
            },
            "properties": {
                "$ref": "#/definitions/property"
            },
            "schema": {
                "readOnly": True,
                "type": "string"
            },
            "self": {
                "readOnly": True,
                "type": "string"
            },
            "created_at": {
                "type": "string",
                "readOnly": True,
                "description": "Date and time of object creation",
                "format": "date-time"
            },
            "updated_at": {
                "type": "string",
                "readOnly": True,
                "description": "Date and time of the last object modification",
                "format": "date-time"
            }
        },
        "additionalProperties": False,
        "definitions": {
            "positiveInteger": {
                "type": "integer",
                "minimum": 0
            },
            "positiveIntegerDefault0": {
                "allOf": [
                    {
                        "$ref": "#/definitions/positiveInteger"
                    },
                    {
                        "default": 0
                    }
                ]
            },
            "stringArray": {
                "type": "array",
                "items": {
                    "type": "string"
                },
                "uniqueItems": True
            },
            "property": {
                "type": "object",
                "additionalProperties": {
                    "type": "object",
                    "required": [
                        "title",
                        "type"
                    ],
                    "properties": {
                        "name": {
                            "type": "string",
                            "maxLength": 80
                        },
                        "title": {
                            "type": "string"
                        },
                        "description": {
                            "type": "string"
                        },
                        "operators": {
                            "type": "array",
                            "items": {
                                "type": "string"
                            }
                        },
                        "type": {
                            "type": "string",
                            "enum": [
                                "array",
                                "boolean",
                                "integer",
                                "number",
                                "object",
                                "string",
                                None
                            ]
                        },
                        "required": {
                            "$ref": "#/definitions/stringArray"
                        },
                        "minimum": {
                            "type": "number"
                        },
                        "maximum": {
                            "type": "number"
                        },
                        "maxLength": {
                            "$ref": "#/definitions/positiveInteger"
                        },
                        "minLength": {
                            "$ref": "#/definitions/positiveIntegerDefault0"
                        },
                        "pattern": {
                            "type": "string",
                            "format": "regex"
                        },
                        "enum": {
                            "type": "array"
                        },
                        "readonly": {
                            "type": "boolean"
                        },
                        "default": {},
                        "items": {
                            "type": "object",
                            "properties": {
                                "type": {
                                    "type": "string",
                                    "enum": [
                                        "array",
                                        "boolean",
                                        "integer",
                                        "number",
                                        "object",
                                        "string",
                                        None
                                    ]
                                },
                                "enum": {
                                    "type": "array"
                                }
                            }
                        },
                        "maxItems": {
                            "$ref": "#/definitions/positiveInteger"
                        },
                        "minItems": {
                            "$ref": "#/definitions/positiveIntegerDefault0"
                        },
                        "uniqueItems": {
                            "type": "boolean",
                            "default": False
                        },
                        "additionalItems": {
                            "type": "boolean"
                        }
                    }
                }
            }
        },
        "required": [
            "name"
        ]
    },
    "tag": {
        "name": "tag",
        "properties": {
            "name": {
                "type": "string",
                "maxLength": 80
            },
            "created_at": {
                "type": "string",
                "readOnly": True,
                "description": "Date and time of tag creation",
                "format": "date-time"
            },
            "updated_at": {
                "type": "string",
                "readOnly": True,
                "description": "Date and time of the last tag modification",
                "format": "date-time"
            }
        },
        "additionalProperties": False,
        "required": [
            "name"
        ]
    },
    "resource_type": {
        "name": "resource_type_association",
        "properties": {
            "name": {
                "type": "string",
                "description": "Resource type names should be aligned with Heat resource types whenever possible: https://docs.openstack.org/heat/latest/template_guide/openstack.html",
                "maxLength": 80
            },
            "prefix": {
                "type": "string",
                "description": "Specifies the prefix to use for the given resource type. Any properties in the namespace should be prefixed with this prefix when being applied to the specified resource type. Must include prefix separator (e.g. a colon :).",
                "maxLength": 80
            },
            "properties_target": {
                "type": "string",
                "description": "Some resource types allow more than one key / value pair per instance.  For example, Cinder allows user and image metadata on volumes. Only the image properties metadata is evaluated by Nova (scheduling or drivers). This property allows a namespace target to remove the ambiguity.",
                "maxLength": 80
            },
            "created_at": {
                "type": "string",
                "readOnly": True,
                "description": "Date and time of resource type association",
                "format": "date-time"
            },
            "updated_at": {
                "type": "string",
                "readOnly": True,
                "description": "Date and time of the last resource type association modification",
                "format": "date-time"
            }
        },
        "additionalProperties": False,
        "required": [
            "name"
        ]
    },
}
# fmt: on


def _collection(name: str, item: dict[str, Any], *, mapping: bool = False) -> dict[str, Any]:
    """A plural document as Glance's ``CollectionSchema.raw()`` builds it from the singular
    (``DictCollectionSchema`` where ``mapping``: properties are keyed by their name): the
    item schema inside, its ``definitions`` moved up to the collection's top level."""
    item = copy.deepcopy(item)
    definitions = item.pop("definitions", None)
    members = ({"type": "object", "additionalProperties": item} if mapping
               else {"type": "array", "items": item})
    doc: dict[str, Any] = {
        "name": name,
        "properties": {name: members, "first": {"type": "string"}, "next": {"type": "string"},
                       "schema": {"type": "string"}},
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }
    if definitions:
        doc["definitions"] = definitions
    return doc


# a property inside the plural is keyed by its name, so Glance does not require one there
_PROPERTY_IN_PROPERTIES = {**_ITEMS["property"],
                           "required": [r for r in _ITEMS["property"]["required"] if r != "name"]}

METADEF_SCHEMAS: dict[str, dict[str, Any]] = {
    "namespace": _ITEMS["namespace"],
    "namespaces": _collection("namespaces", _ITEMS["namespace"]),
    "property": _ITEMS["property"],
    "properties": _collection("properties", _PROPERTY_IN_PROPERTIES, mapping=True),
    "object": _ITEMS["object"],
    "objects": _collection("objects", _ITEMS["object"]),
    "tag": _ITEMS["tag"],
    "tags": _collection("tags", _ITEMS["tag"]),
    "resource_type": _ITEMS["resource_type"],
    "resource_types": _collection("resource_type_associations", _ITEMS["resource_type"]),
}

# fmt: off
TASK_SCHEMA: dict[str, Any] = {
    "name": "task",
    "properties": {
        "id": {
            "description": "An identifier for the task",
            "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$",
            "type": "string"
        },
        "type": {
            "description": "The type of task represented by this content",
            "enum": [
                "import",
                "api_image_import",
                "location_import"
            ],
            "type": "string"
        },
        "status": {
            "description": "The current status of this task",
            "enum": [
                "pending",
                "processing",
                "success",
                "failure"
            ],
            "type": "string"
        },
        "input": {
            "description": "The parameters required by task, JSON blob",
            "type": [
                "null",
                "object"
            ]
        },
        "result": {
            "description": "The result of current task, JSON blob",
            "type": [
                "null",
                "object"
            ]
        },
        "owner": {
            "description": "An identifier for the owner of this task",
            "type": "string"
        },
        "message": {
            "description": "Human-readable informative message only included when appropriate (usually on failure)",
            "type": "string"
        },
        "image_id": {
            "description": "Image associated with the task",
            "type": "string"
        },
        "request_id": {
            "description": "Human-readable informative request-id",
            "type": "string"
        },
        "user_id": {
            "description": "User associated with the task",
            "type": "string"
        },
        "expires_at": {
            "description": "Datetime when this resource would be subject to removal",
            "type": [
                "null",
                "string"
            ]
        },
        "created_at": {
            "description": "Datetime when this resource was created",
            "type": "string"
        },
        "updated_at": {
            "description": "Datetime when this resource was updated",
            "type": "string"
        },
        "self": {
            "readOnly": True,
            "type": "string"
        },
        "schema": {
            "readOnly": True,
            "type": "string"
        }
    }
}

TASKS_SCHEMA: dict[str, Any] = {
    "name": "tasks",
    "properties": {
        "tasks": {
            "type": "array",
            "items": {
                "name": "task",
                "properties": {
                    "id": {
                        "description": "An identifier for the task",
                        "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$",
                        "type": "string"
                    },
                    "type": {
                        "description": "The type of task represented by this content",
                        "enum": [
                            "import",
                            "api_image_import",
                            "location_import"
                        ],
                        "type": "string"
                    },
                    "status": {
                        "description": "The current status of this task",
                        "enum": [
                            "pending",
                            "processing",
                            "success",
                            "failure"
                        ],
                        "type": "string"
                    },
                    "owner": {
                        "description": "An identifier for the owner of this task",
                        "type": "string"
                    },
                    "image_id": {
                        "description": "Image associated with the task",
                        "type": "string"
                    },
                    "request_id": {
                        "description": "Human-readable informative request-id",
                        "type": "string"
                    },
                    "user_id": {
                        "description": "User associated with the task",
                        "type": "string"
                    },
                    "expires_at": {
                        "description": "Datetime when this resource would be subject to removal",
                        "type": [
                            "null",
                            "string"
                        ]
                    },
                    "created_at": {
                        "description": "Datetime when this resource was created",
                        "type": "string"
                    },
                    "updated_at": {
                        "description": "Datetime when this resource was updated",
                        "type": "string"
                    },
                    "self": {
                        "readOnly": True,
                        "type": "string"
                    },
                    "schema": {
                        "readOnly": True,
                        "type": "string"
                    }
                }
            }
        },
        "schema": {
            "type": "string"
        }
    },
    "links": [
        {
            "rel": "describedby",
            "href": "{schema}"
        }
    ]
}
