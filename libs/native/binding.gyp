{
  "targets": [
    {
      # Our own SGEMM, compiled for baseline x86-64: its AVX2 and AVX-512 kernels carry their own
      # target attributes and are picked at run time, so this part needs no -march=native.
      "target_name": "patchlm_sgemm",
      "type": "static_library",
      "sources": ["src/cc/sgemm.cc"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=gnu++20", "-O3", "-fPIC", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "patchlm_native",
      "dependencies": ["patchlm_sgemm"],
      "sources": [
        "src/cc/addon.cc",
        "src/cc/attention.cc",
        "src/cc/copy.cc",
        "src/cc/elementwise.cc",
        "src/cc/fused.cc",
        "src/cc/gemm.cc",
        "src/cc/peak.cc",
        "src/cc/pool.cc",
        "src/cc/reduce.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      # Without OpenBLAS (none found, or PATCHLM_NO_OPENBLAS=1), our own GEMM alone.
      "conditions": [
        ["'<!(node scripts/blas.cjs found)'=='yes'", {
          "include_dirs": ["<!@(node scripts/blas.cjs include_dirs)"],
          "libraries": ["<!@(node scripts/blas.cjs libraries)"]
        }, {
          "defines": ["PATCHLM_NO_OPENBLAS"]
        }]
      ],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      # No -march=native (a binary for the build machine's model only): x86-64-v3 where the build
      # CPU has AVX2 (scripts/march.cjs); the GEMM and the peak measurement dispatch at run time.
      "cflags_cc": ["-std=gnu++20", "-O3", "<!(node scripts/march.cjs)", "-fno-math-errno", "-fno-trapping-math", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
