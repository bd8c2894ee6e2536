{
  "targets": [
    {
      "target_name": "tandem_forwarder",
      "sources": ["forwarder.c"],
      "cflags": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"],
      "libraries": ["-lpthread"],
      "conditions": [["OS!='linux'", {"type": "none", "sources": []}]]
    }
  ]
}
