# plugin.cmake: the workflow plugin's extra build settings, and the benchmark's driver.
target_link_libraries(${ZT_PLUGIN_TARGET} PRIVATE m)

# bench/workflow_bench.c → build/plugins/wfbench.so: a plugin that drives the workflow
# services in large transactions (bench/workflow_bench.py loads it; nothing else does).
add_library(plugin_wfbench MODULE ${CMAKE_SOURCE_DIR}/bench/workflow_bench.c)
target_include_directories(plugin_wfbench PRIVATE ${CMAKE_SOURCE_DIR}/core/include)
target_link_libraries(plugin_wfbench PRIVATE PkgConfig::CJSON)
set_target_properties(plugin_wfbench PROPERTIES PREFIX "" OUTPUT_NAME wfbench
  LIBRARY_OUTPUT_DIRECTORY ${ZT_DEFAULT_PLUGIN_DIR} C_VISIBILITY_PRESET hidden)
add_dependencies(zhengtong plugin_wfbench)
