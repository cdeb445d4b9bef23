#!/usr/bin/env python3
"""Checks the static proof (`gpurnn-perf ptx`) against a real CUDA driver, on the GPU machine.

For every JSON line of `gpurnn-perf ptx` whose architecture is the card's, the driver JIT-compiles the same .ptx
(cuModuleLoadDataEx, as ILGPU does when it loads a kernel) and reports registers and local memory
(cuFuncGetAttribute), its occupancy API gives resident groups per multiprocessor at the line's group
configuration (cuOccupancyMaxActiveBlocksPerMultiprocessor) and, for implicitly grouped kernels, the group size
ILGPU would get (cuOccupancyMaxPotentialBlockSize). Needs only python3 and libcuda.so.1 (ctypes), no .NET.

usage: ptx-driver-check.py LINES.jsonl OUT.json
Prints one line per kernel and group configuration (static vs driver) and exits 1 if any number differs.
"""
import ctypes
import json
import re
import sys

CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK = 0
CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES = 1
CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3
CU_FUNC_ATTRIBUTE_NUM_REGS = 4
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
CU_JIT_INFO_LOG_BUFFER = 3
CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4
CU_JIT_ERROR_LOG_BUFFER = 5
CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6
CU_JIT_LOG_VERBOSE = 12


def main(lines_path, out_path):
    cuda = ctypes.CDLL("libcuda.so.1")

    def check(result, what):
        if result != 0:
            text = ctypes.c_char_p()
            cuda.cuGetErrorString(result, ctypes.byref(text))
            raise RuntimeError(f"{what}: CUDA error {result} {text.value.decode() if text.value else ''}")

    check(cuda.cuInit(0), "cuInit")
    device = ctypes.c_int()
    check(cuda.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
    context = ctypes.c_void_p()
    check(cuda.cuDevicePrimaryCtxRetain(ctypes.byref(context), device), "cuDevicePrimaryCtxRetain")
    check(cuda.cuCtxSetCurrent(context), "cuCtxSetCurrent")
    name = ctypes.create_string_buffer(256)
    check(cuda.cuDeviceGetName(name, 256, device), "cuDeviceGetName")
    major, minor, version = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    check(cuda.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device), "major")
    check(cuda.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device), "minor")
    check(cuda.cuDriverGetVersion(ctypes.byref(version)), "cuDriverGetVersion")
    arch = f"sm_{major.value}{minor.value}"
    card = {"name": name.value.decode(), "arch": arch, "driverCudaVersion": version.value}
    print(f"{card['name']} ({arch}), driver CUDA {version.value // 1000}.{version.value % 1000 // 10}")

    with open(lines_path) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    lines = [l for l in lines if l["arch"] == arch]
    if not lines:
        raise RuntimeError(f"no line of {lines_path} is for {arch}")

    functions = {}
    results, differences = [], 0
    for line in lines:
        ptx_path = line["ptx"]
        if ptx_path not in functions:
            with open(ptx_path, "rb") as f:
                ptx = f.read()
            entry = re.search(rb"\.entry\s+(\w+)", ptx).group(1)
            info = ctypes.create_string_buffer(1 << 16)
            error = ctypes.create_string_buffer(1 << 16)
            options = (ctypes.c_int * 5)(CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
                                         CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, CU_JIT_LOG_VERBOSE)
            values = (ctypes.c_void_p * 5)(ctypes.cast(info, ctypes.c_void_p), ctypes.c_void_p(1 << 16),
                                           ctypes.cast(error, ctypes.c_void_p), ctypes.c_void_p(1 << 16), ctypes.c_void_p(1))
            module = ctypes.c_void_p()
            check(cuda.cuModuleLoadDataEx(ctypes.byref(module), ptx + b"\0", 5, options, values),
                  f"cuModuleLoadDataEx {ptx_path}: {error.value.decode(errors='replace')}")
            function = ctypes.c_void_p()
            check(cuda.cuModuleGetFunction(ctypes.byref(function), module, entry), f"cuModuleGetFunction {entry}")
            attributes = {}
            for key, attribute in (("registers", CU_FUNC_ATTRIBUTE_NUM_REGS), ("localBytes", CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES),
                                   ("sharedStaticBytes", CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES),
                                   ("maxThreadsPerGroup", CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK)):
                value = ctypes.c_int()
                check(cuda.cuFuncGetAttribute(ctypes.byref(value), attribute, function), f"cuFuncGetAttribute {key}")
                attributes[key] = value.value
            attributes["jitLog"] = info.value.decode(errors="replace").strip()
            functions[ptx_path] = (function, attributes)
        function, attributes = functions[ptx_path]

        threads = line["threadsPerGroup"]
        if line["launch"] == "auto":
            grid, block = ctypes.c_int(), ctypes.c_int()
            check(cuda.cuOccupancyMaxPotentialBlockSize(ctypes.byref(grid), ctypes.byref(block), function, None,
                                                        ctypes.c_size_t(0), 0), "cuOccupancyMaxPotentialBlockSize")
            driver_threads = block.value
        else:
            driver_threads = threads
        groups = ctypes.c_int()
        check(cuda.cuOccupancyMaxActiveBlocksPerMultiprocessor(ctypes.byref(groups), function, driver_threads,
                                                               ctypes.c_size_t(line["sharedDynamicBytes"])),
              "cuOccupancyMaxActiveBlocksPerMultiprocessor")
        driver = {"registers": attributes["registers"], "localBytes": attributes["localBytes"],
                  "sharedStaticBytes": attributes["sharedStaticBytes"], "threadsPerGroup": driver_threads,
                  "groupsPerSm": groups.value}
        static = {"registers": line["registers"], "localBytes": line["stackBytes"],
                  "sharedStaticBytes": line["sharedStaticBytes"], "threadsPerGroup": threads,
                  "groupsPerSm": line["groupsPerSm"]}
        differ = [k for k in static if static[k] != driver[k]]
        differences += bool(differ)
        results.append({"kernel": line["kernel"], "launch": line["launch"], "static": static, "driver": driver,
                        "differ": differ, "jitLog": attributes["jitLog"]})
        print(f"{line['kernel']:45} {line['launch']:12} regs {static['registers']:3}/{driver['registers']:3}  "
              f"local {static['localBytes']}/{driver['localBytes']}  threads {threads}/{driver_threads}  "
              f"groups/SM {static['groupsPerSm']}/{driver['groupsPerSm']}" + ("  DIFFERS: " + ",".join(differ) if differ else ""))

    with open(out_path, "w") as f:
        json.dump({"card": card, "lines": results, "differences": differences}, f, indent=1)
    print(f"{len(results)} lines, {differences} differ (static/driver)")
    return 1 if differences else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: ptx-driver-check.py LINES.jsonl OUT.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
