# cmake -DTOOL=make_formula_checkpoint -DREF=tests/data/diffusers -DDST=dir -P make_formula_models.cmake
# The reference models whose weights are made by the formula (too large to commit) are copied to
# DST with their weights regenerated: cifar in the hub's flat layout with legacy attention names (as
# google/ddpm-cifar10-32 has them), mh_pipeline in the diffusers pipeline layout. Skips a model
# whose weights are newer than the tool.
foreach(model cifar mh_pipeline)
  set(src ${REF}/models/${model})
  set(dst ${DST}/${model})
  file(GLOB_RECURSE jsons RELATIVE ${src} ${src}/*.json)
  foreach(name IN LISTS jsons)
    get_filename_component(dir ${dst}/${name} DIRECTORY)
    file(MAKE_DIRECTORY ${dir})
    file(COPY_FILE ${src}/${name} ${dst}/${name} ONLY_IF_DIFFERENT)
  endforeach()
  if(EXISTS ${dst}/unet/config.json)
    set(unet ${dst}/unet)
    set(names "")
  else()
    set(unet ${dst})
    set(names --legacy-names)
  endif()
  set(weights ${unet}/diffusion_pytorch_model.safetensors)
  if(EXISTS ${weights} AND ${weights} IS_NEWER_THAN ${TOOL})
    message(STATUS "up to date: ${weights}")
    continue()
  endif()
  execute_process(COMMAND ${TOOL} ${unet}/config.json ${weights} ${names} RESULT_VARIABLE rc
                  OUTPUT_VARIABLE sha OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "make_formula_checkpoint failed for ${model} (${rc})")
  endif()
  message(STATUS "wrote ${weights}: weights sha256 ${sha}")
endforeach()
