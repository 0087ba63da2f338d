# Install layout and the Debian package (`cpack -G DEB`), included from the
# top CMakeLists.txt once every target exists.
#
# Components: "main" (mlstream: the binary, man page, systemd units, docs),
# "torch" (mlstream-torch: the torch plugin) and "tensorflow" (its plugin;
# `cmake --install` installs it, the package does not, see below).

# The systemd units, relative to the prefix: /usr/lib/systemd/system in
# the package, which systemd reads on every Debian (and lintian accepts).
set(MLS_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
  "Where the systemd units go (absolute, or relative to the prefix)")

install(TARGETS mlstream RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  COMPONENT main)
install(FILES deploy/systemd/mlstream-engine@.service
  deploy/systemd/mlstream-gateway.service
  DESTINATION ${MLS_SYSTEMD_UNITDIR} COMPONENT main)

# Documentation. docs/configuration.md and the man page are both generated
# from the configuration table (src/common/config.c).
file(GLOB _docs CONFIGURE_DEPENDS docs/*.md)
install(FILES README.md ${_docs} DESTINATION ${CMAKE_INSTALL_DOCDIR}
  COMPONENT main)
install(DIRECTORY docs/internals DESTINATION ${CMAKE_INSTALL_DOCDIR}
  COMPONENT main FILES_MATCHING PATTERN "*.md")
install(FILES deploy/systemd/mlstream.env.example
  deploy/prometheus/rules.yml deploy/grafana/mlstream.json
  DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples COMPONENT main)

# mlstream(1), written by the binary just built from its configuration
# table (`mlstream config --man`), compressed reproducibly (gzip -n).
set(MLS_MAN_GZ ${CMAKE_BINARY_DIR}/mlstream.1.gz)
add_custom_command(OUTPUT ${MLS_MAN_GZ}
  COMMAND sh -c "\"$1\" config --man >mlstream.1 && gzip -9nf mlstream.1"
          sh $<TARGET_FILE:mlstream>
  DEPENDS mlstream WORKING_DIRECTORY ${CMAKE_BINARY_DIR}
  COMMENT "Generating mlstream.1.gz" VERBATIM)
add_custom_target(mls_manpage ALL DEPENDS ${MLS_MAN_GZ})
install(FILES ${MLS_MAN_GZ} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1
  COMPONENT main)

# Debian's copyright file and changelog, in the doc directory of every
# package. The changelog's date is SOURCE_DATE_EPOCH when set, so that a
# rebuild of the same tree gives the same package.
set(MLS_PACKAGE_RELEASE 1 CACHE STRING "Debian revision of the package")
set(MLS_PACKAGE_MAINTAINER
  "mlstream maintainers <maintainers@users.noreply.r-seed-9eefbe93.example>"
  CACHE STRING "Maintainer field of the Debian package")
string(TIMESTAMP MLS_PACKAGE_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)
set(_changelog ${CMAKE_BINARY_DIR}/packaging/changelog.Debian)
configure_file(packaging/changelog.Debian.in ${_changelog} @ONLY)
add_custom_command(OUTPUT ${_changelog}.gz
  COMMAND gzip -9nkf ${_changelog}
  DEPENDS ${_changelog} COMMENT "Compressing changelog.Debian" VERBATIM)
add_custom_target(mls_changelog ALL DEPENDS ${_changelog}.gz)
install(FILES packaging/copyright ${_changelog}.gz
  DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT main)
install(FILES packaging/lintian-overrides DESTINATION share/lintian/overrides
  RENAME mlstream COMPONENT main)
if(TARGET mls_model_torch)
  install(FILES packaging/copyright ${_changelog}.gz
    DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/mlstream-torch
    COMPONENT torch)
  install(FILES packaging/lintian-overrides-torch
    DESTINATION share/lintian/overrides RENAME mlstream-torch
    COMPONENT torch)
endif()

# The .deb packages: mlstream, and mlstream-torch when the torch plugin was
# built (against Debian's libtorch, so dpkg-shlibdeps finds its packages;
# it pulls in ~280 libraries, hence a package of its own that only those who
# score TorchScript install).
# The tensorflow plugin is left out: its libtensorflow_cc comes from a PyPI
# wheel unpacked into the builder's cache, no Debian package provides it
# (dpkg-shlibdeps would fail) and its RPATH points into that cache, so a
# package with it could not work on another machine.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mlstream)
set(CPACK_PACKAGE_VENDOR mlstream)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "${MLS_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL main)
if(TARGET mls_model_torch)
  list(APPEND CPACK_COMPONENTS_ALL torch)
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${MLS_PACKAGE_RELEASE})
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${MLS_PACKAGE_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/mlstream/mlstream")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)
set(_deb_version "${PROJECT_VERSION}-${MLS_PACKAGE_RELEASE}")

set(CPACK_DEBIAN_MAIN_PACKAGE_NAME mlstream)
set(CPACK_DEBIAN_MAIN_PACKAGE_SUGGESTS "mlstream-torch, redis-server, kcat")
set(CPACK_COMPONENT_MAIN_DESCRIPTION
  "streaming machine-learning inference from Kafka to GraphQL
mlstream consumes events from Apache Kafka, scores them with a model
(TorchScript through the mlstream-torch package, or the built-in identity
model) and publishes every prediction to Redis, to GraphQL subscribers
over WebSocket and optionally to a Kafka topic; bad messages go to a
dead-letter topic. It runs as an engine, a gateway, or all in one process
with an embedded in-memory broker for development (mlstream up).
Prometheus metrics, health endpoints and hardened systemd units are
included.")

set(CPACK_DEBIAN_TORCH_PACKAGE_NAME mlstream-torch)
set(CPACK_DEBIAN_TORCH_PACKAGE_DEPENDS "mlstream (= ${_deb_version})")
set(CPACK_DEBIAN_TORCH_PACKAGE_SECTION science)
set(CPACK_COMPONENT_TORCH_DESCRIPTION
  "TorchScript model plugin for mlstream
This package adds the torch model framework to mlstream: the engine loads
TorchScript models (ML_MODEL_FRAMEWORK=torch) through libtorch.")

include(CPack)
