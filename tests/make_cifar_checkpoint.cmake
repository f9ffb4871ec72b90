# cmake -DTOOL=make_formula_checkpoint -DSRC=tests/data/diffusers/models/cifar -DDST=dir -P this
# Copies the model's JSON files and writes its formula weights (legacy attention names, as the hub's
# google/ddpm-cifar10-32 file has them) unless an up-to-date copy exists.
file(MAKE_DIRECTORY ${DST})
foreach(name config.json scheduler_config.json model_index.json)
  file(COPY_FILE ${SRC}/${name} ${DST}/${name} ONLY_IF_DIFFERENT)
endforeach()
set(weights ${DST}/diffusion_pytorch_model.safetensors)
if(EXISTS ${weights} AND ${weights} IS_NEWER_THAN ${TOOL})
  message(STATUS "up to date: ${weights}")
  return()
endif()
execute_process(COMMAND ${TOOL} ${DST}/config.json ${weights} --legacy-names RESULT_VARIABLE rc
                OUTPUT_VARIABLE sha OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "make_formula_checkpoint failed (${rc})")
endif()
message(STATUS "wrote ${weights}: weights sha256 ${sha}")
