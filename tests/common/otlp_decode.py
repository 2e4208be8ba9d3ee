#!/usr/bin/env python3
"""Decodes OTLP/HTTP trace requests with the official opentelemetry-proto
definitions and prints what they hold as one JSON document on stdout.

Usage: otlp_decode.py CONTENT_TYPE BODY_FILE...

Protobuf bodies are parsed as ExportTraceServiceRequest. JSON bodies are
checked against OTLP's JSON encoding: ids must be lowercase hex (not
protobuf JSON's base64); they are then turned into base64 and the document
parsed strictly (an unknown field fails) into the same message. Anything
that does not decode exits with status 1 and says why on stderr.
"""

import base64
import json
import re
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

HEX = {"traceId": 32, "spanId": 16, "parentSpanId": 16}


def hex_to_base64(span, where):
    for key, length in HEX.items():
        if key not in span:
            continue
        value = span[key]
        if not re.fullmatch("[0-9a-f]{%d}" % length, value):
            sys.exit("%s: %s %r is not %d lowercase hex digits" % (where, key, value, length))
        span[key] = base64.b64encode(bytes.fromhex(value)).decode()


def parse_json(body, where):
    doc = json.loads(body)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                hex_to_base64(span, where)
    request = trace_service_pb2.ExportTraceServiceRequest()
    json_format.ParseDict(doc, request, ignore_unknown_fields=False)
    return request


def any_value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attributes(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


def main():
    content_type, files = sys.argv[1], sys.argv[2:]
    out = []
    for path in files:
        with open(path, "rb") as f:
            body = f.read()
        if content_type == "application/x-protobuf":
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            # Re-encoding must give the same bytes: no unknown or misplaced field.
            if request.SerializeToString() != body:
                sys.exit("%s: protobuf does not re-encode to the same bytes" % path)
        elif content_type == "application/json":
            request = parse_json(body, path)
        else:
            sys.exit("unknown content type %r" % content_type)
        for rs in request.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    out.append({
                        "resource": attributes(rs.resource.attributes),
                        "scope": {"name": ss.scope.name, "version": ss.scope.version},
                        "traceId": s.trace_id.hex(),
                        "spanId": s.span_id.hex(),
                        "parentSpanId": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "attributes": attributes(s.attributes),
                        "events": [{"name": e.name, "time": e.time_unix_nano,
                                    "attributes": attributes(e.attributes)} for e in s.events],
                        "status": {"code": s.status.code, "message": s.status.message},
                    })
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
