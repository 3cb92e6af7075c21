# plugin.cmake: the sensor plugin links zlib (gzip bodies), libmosquitto (MQTT), nng and libuv.
find_package(ZLIB REQUIRED)
pkg_check_modules(MOSQUITTO REQUIRED IMPORTED_TARGET libmosquitto)
target_link_libraries(${ZT_PLUGIN_TARGET} PRIVATE ZLIB::ZLIB PkgConfig::MOSQUITTO nng::nng m)
